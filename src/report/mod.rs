//! Reports: CSV/JSON exporters, PNG charts (plotters) and the HTML page.
