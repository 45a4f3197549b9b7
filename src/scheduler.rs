//! Scheduled jobs: polls, promotion, the weekly digest run and queue draining, each on a cron
//! schedule in Europe/London, run once per tick across daemons.
