//! Payment providers behind one trait.
