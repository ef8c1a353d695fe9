"""The Docker Engine API over HTTP: routes -> engine backend; errors ->
Docker's {"message": ...} with the right status code."""
