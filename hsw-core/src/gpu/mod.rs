//! GPU catalog and planner (see ARCHITECTURE.md).
