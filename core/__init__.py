"""The ground floor every room imports: domain types (:mod:`core.domain`), the declared settings
(:mod:`core.settings`), the fixed-bucket histogram (:mod:`core.histogram`), the errors' base class
(:mod:`core.errors`) and the one retry policy (:mod:`core.retry`). It imports no room."""
