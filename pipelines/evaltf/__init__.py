"""Building blocks of the evaluation transforms: view geometry and the deform field."""
