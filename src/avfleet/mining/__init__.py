"""Mining: score unlabeled frames with the ensemble, select the next ones to label."""
