"""A web page where a person answers preference queries by watching rollouts (`embodied label`)."""
