"""The named presets (`--config NAME`): each `<name>.py` here defines `get_config() -> Config`.

They ship inside the package, so an installed `plasticc-jax` runs them from any folder; a
`configs/<name>.py` in the project folder (`--workdir`) is found first (`config_io.preset_path`).
"""
