"""Review export: cases cut into signed, masked, per-role batches and workbooks."""
