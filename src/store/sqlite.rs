//! The SQLite store (embedded default). Being written: see the store work branch.
