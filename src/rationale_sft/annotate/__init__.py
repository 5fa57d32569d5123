"""Expert annotation: blinded packets (HTML, CSV, Label Studio) and rating import with agreement statistics."""
