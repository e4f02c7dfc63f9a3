//! The store contract suite, run against every store.
