//! The data plane (being written).
