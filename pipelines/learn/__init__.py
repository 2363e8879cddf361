"""Training and measuring the checklist's learned parts: heads (`train`), a team's own items (`train_items`),
leave-one-writer-out evaluation (`train_eval`), confidence calibration and text/audio evaluation."""
