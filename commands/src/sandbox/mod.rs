//! The bundled sandbox provider: a real HTTP server.
