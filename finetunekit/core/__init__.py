"""The engine, its hook specifications, plugin manager, recipes, errors and CLI."""
