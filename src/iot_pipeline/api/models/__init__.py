"""Models of the API (what the OpenAPI document promises), one module per resource; each
router imports its own. The class names are the schema names of the OpenAPI document."""
