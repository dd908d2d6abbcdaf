//! bbb-sim (in progress)
