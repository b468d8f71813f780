"""Small clients the suite runs in pods where curl cannot do the job."""
