//! plumb's GitHub provider (being written).
