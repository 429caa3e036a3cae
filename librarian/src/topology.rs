//! Topology configs (INI and TMCF JSON) and database population, used by `book-register`.
