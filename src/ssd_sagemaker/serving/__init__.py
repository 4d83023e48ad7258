"""Real-time inference: predictor, Flask routes, gunicorn server."""
