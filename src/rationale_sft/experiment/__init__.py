"""The controlled experiment: the grid config and the plan that turns it into jobs over every stage."""
