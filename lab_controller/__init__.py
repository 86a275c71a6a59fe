"""lab_controller."""
