"""End-to-end tests of hybrid execution: Docker worker, flow image, S3 results, production stack."""
