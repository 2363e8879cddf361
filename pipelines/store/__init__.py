"""The one door to DuckDB: the store (`database`), its schema (`migrations`), the read models' queries (`reads`,
`history`, `app_reads`), human reviews and appeals (`review`, `appeals`), the web app's kept connection (`pool`),
files written by COPY (`exports`, `partitions`) and generated data for benches (`synthetic`)."""
