"""The preset registry: one TOML file a preset (shipped as the package edge_sql.presets)."""
