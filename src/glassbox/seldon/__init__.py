"""Adapters to Seldon Core v1's Python wrapper shared by the model and the explainer components.

Error handling on Seldon's Flask app (``http_errors``) and the microservice's process lifecycle. This
package imports Flask and seldon-core, so only the two Seldon components import it.
"""
