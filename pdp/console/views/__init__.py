"""The console pages, one module per section; each exports routes(console)."""
