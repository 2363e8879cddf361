"""What people read: the week's read model (`report_data`), the scorecard, the HTML report and its exports,
coaching examples, follow-up promises and per-call timing metrics."""
