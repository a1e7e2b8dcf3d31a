"""The core every layer stands on: errors, the registries, the config schema and its parsing, wording."""
