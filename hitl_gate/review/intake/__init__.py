"""Review intake: returned verdict files checked, recorded, escalated and made final."""
