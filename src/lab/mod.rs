//! # Lab (being built): netns topology, backend server.
pub mod backend;
