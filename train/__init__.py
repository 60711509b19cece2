"""Models and optimisation: the BAT networks and their training and testing runners."""
