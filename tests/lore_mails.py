"""Turn a `git format-patch` mbox into the mails of a posted series, as lore
would serve them: a cover letter "[PATCH vN 0/n]" carrying base-commit and
b4's change-id, each patch "[PATCH vN i/n]" replying to it, with Message-IDs
and dates. What the nightly tests serve on the loopback lore."""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
from datetime import datetime, timedelta, timezone
from pathlib import Path


def msgid(name: str, version: int, i: int) -> str:
    return f"{name}-v{version}-{i}@orch.test"


def post(mbox: Path, out: Path, *, name: str, title: str, version: int,
         change_id: str | None, base: str | None, date: datetime) -> str:
    """Write the series' mails to `out` (an .mbox the loopback lore reads);
    returns the cover letter's Message-ID."""
    patches = [m for m in mailbox.mbox(str(mbox))]
    n = len(patches)
    prefix = f"PATCH v{version}" if version > 1 else "PATCH"
    cover_id = msgid(name, version, 0)
    body = f"{title}, revision {version}.\n\n---\n"
    if base:
        body += f"base-commit: {base}\n"
    if change_id:
        body += f"change-id: {change_id}\n"
    mails = [_mail(cover_id, None, f"[{prefix} 0/{n}] {title}", body, date)]
    for i, p in enumerate(patches, 1):
        subject = str(p["Subject"]).replace("\n", " ")
        subject = subject.split("] ", 1)[-1] if subject.startswith("[") else subject
        mails.append(_mail(msgid(name, version, i), cover_id, f"[{prefix} {i}/{n}] {subject}",
                           p.get_payload(decode=True).decode(), date + timedelta(seconds=i)))
    with open(out, "wb") as f:
        for m in mails:
            f.write(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n")
            data = m.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))
            for line in data.split(b"\n"):
                if line.lstrip(b">").startswith(b"From "):
                    line = b">" + line
                f.write(line + b"\n")
            f.write(b"\n")
    return cover_id


def _mail(mid: str, reply_to: str | None, subject: str, body: str, date: datetime):
    m = email.message.EmailMessage()
    m["From"] = "Orch Tests <orch-tests@localhost>"
    m["To"] = "linux-block@vger.kernel.org"
    m["Subject"] = subject
    m["Date"] = email.utils.format_datetime(date.astimezone(timezone.utc))
    m["Message-ID"] = f"<{mid}>"
    if reply_to:
        m["In-Reply-To"] = f"<{reply_to}>"
        m["References"] = f"<{reply_to}>"
    m.set_content(body, cte="8bit")   # as posted: git am reads it as it is
    return m


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
