"""How long address validation takes: 100,000 distinct email addresses and phone numbers through
``courtship.channels.email_problem`` / ``phone_problem`` (email-validator, phonenumbers), then the
same again from the cache. Channels validate at send time, once per distinct address messaged."""

from __future__ import annotations

import random
import time

from courtship.channels import email_problem, phone_problem

COUNT = 100_000


def main() -> None:
    rng = random.Random(7)
    emails = [f"customer.{i}@shop{i % 997}.example.org" for i in range(COUNT)]
    phones = [
        f"+1{rng.choice(['202', '415', '646', '312'])}{2000000 + i:07d}" for i in range(COUNT)
    ]
    for name, check, values in (("email", email_problem, emails), ("phone", phone_problem, phones)):
        start = time.perf_counter()
        bad = sum(1 for value in values if check(value))
        first = time.perf_counter() - start
        start = time.perf_counter()
        sum(1 for value in values if check(value))
        again = time.perf_counter() - start
        print(
            f"{name}: {COUNT:,} distinct in {first:.2f} s ({first / COUNT * 1e6:.0f} µs each, "
            f"{bad} invalid); again from the cache in {again:.3f} s"
        )


if __name__ == "__main__":
    main()
