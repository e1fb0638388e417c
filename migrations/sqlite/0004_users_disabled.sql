-- A disabled user can neither log in nor use a token. (0003 is kept for the console's sessions.)
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
