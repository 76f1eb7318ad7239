"""Views over stored rows: the `Comparison`, formatting, charts and the HTML report.

Views read rows and never call the network."""
