"""Aether ``file`` watcher: render one config as JSON, or a Jinja2 template over several,
to a file atomically (temp file, fsync, rename, directory fsync), then run a reload
command or signal a pid — once per change of the file."""
