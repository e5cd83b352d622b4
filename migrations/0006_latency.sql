-- dnnpress-server schema, version 6: per-layer latency tables.
--
-- spec.auto.objective "latency" chooses per-layer pruning rates against the
-- measured latency of a registered device (docs/job-spec.md). A device
-- measures, once per architecture and scheme, each layer's milliseconds at a
-- few rates and uploads the table (PUT /agent/v1/latency); workers read it
-- back (GET /agent/v1/latency). A new upload for the same device, arch and
-- scheme replaces the old one; measured_at says how old it is.
CREATE TABLE latency_tables (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    arch        TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    tbl         TEXT NOT NULL,
    measured_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, arch, scheme)
);
