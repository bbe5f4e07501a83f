"""Models, queries, migrations and the demo seed."""
