"""The continual learner: its own process and consumer group on events + items (`streamrec learner`)."""
