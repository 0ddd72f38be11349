//! Cron schedules: parsing, time zones, DST, and which fire times are due. (Being written.)
