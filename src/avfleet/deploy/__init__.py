"""Deploy: export a trained model, build its engine, validate it on a bench, promote it."""
