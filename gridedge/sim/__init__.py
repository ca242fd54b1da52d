"""Protocol-faithful device simulators and the site model they share."""
