"""One module per dashboard; each only assembles panels from `dashboards.common`."""
