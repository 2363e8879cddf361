"""Running the pipeline: planning a batch, transcribing and scoring it, the Prefect flows, deployments and
the Dask task runner. Everything that writes goes through `callqa.pipelines.store`."""
