//! The HTTPS admission server (being written).
