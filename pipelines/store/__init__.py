"""The one door to DuckDB: the store (`database`), its schema (`migrations`) and human reviews (`review`)."""
