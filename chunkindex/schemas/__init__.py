"""JSON Schemas of recipes and the workflow config (YAML), loaded with importlib.resources."""
