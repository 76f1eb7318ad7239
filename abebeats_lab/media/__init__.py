"""Video files: safe downloads and probing, the procedural renderer, and assembly."""
