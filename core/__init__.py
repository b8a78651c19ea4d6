"""The ground floor every room imports: domain types (:mod:`core.domain`), the declared settings
(:mod:`core.settings`) and the fixed-bucket histogram (:mod:`core.histogram`). It imports no room."""
