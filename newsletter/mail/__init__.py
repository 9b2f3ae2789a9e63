"""One subscriber's email: templates rendered, the MIME message, and the render-once composer."""
