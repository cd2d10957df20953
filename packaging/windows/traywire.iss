; Inno Setup 6 script: the traywire installer for Windows (per user, no admin).
; On Windows, after the PyInstaller build (dist\traywire\), from the repository root:
;
;     iscc /DAppVersion=0.1.0 packaging\windows\traywire.iss
;
; -> dist\traywire-0.1.0-setup.exe. It installs to %LOCALAPPDATA%\Programs\traywire,
; adds a Start-menu entry and, if ticked, starts traywire at login through the
; same Run value traywire's own "Start at login" menu item uses. Uninstalling
; removes the program and that value; the config, state and request log in
; %LOCALAPPDATA%\traywire and the keys in Credential Manager stay.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif

[Setup]
; Never change AppId: upgrades find the installed version by it.
AppId={{11DB09F2-9059-49FB-994B-DF150EF4C25E}
AppName=traywire
AppVersion={#AppVersion}
AppVerName=traywire {#AppVersion}
AppPublisher=traywire developers
DefaultDirName={autopf}\traywire
DefaultGroupName=traywire
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=traywire-{#AppVersion}-setup
SetupIconFile=..\..\assets\traywire.ico
UninstallDisplayIcon={app}\traywire.exe
UninstallDisplayName=traywire
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
; A running traywire is closed before its files are replaced.
CloseApplications=yes

[Tasks]
Name: "startatlogin"; Description: "Start traywire when I log in"; GroupDescription: "Start at login:"
Name: "desktopicon"; Description: "Create a desktop shortcut"; GroupDescription: "Shortcuts:"; Flags: unchecked

[Files]
Source: "..\..\dist\traywire\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\traywire"; Filename: "{app}\traywire.exe"; Comment: "One local OpenAI/Ollama endpoint for many LLM backends"
Name: "{group}\Uninstall traywire"; Filename: "{uninstallexe}"
Name: "{autodesktop}\traywire"; Filename: "{app}\traywire.exe"; Tasks: desktopicon

[Registry]
; The value traywire.autostart writes and reads: HKCU\...\Run, value "traywire".
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "traywire"; ValueData: """{app}\traywire.exe"""; Flags: uninsdeletevalue; Tasks: startatlogin

[Run]
Filename: "{app}\traywire.exe"; Description: "Start traywire now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
Filename: "{sys}\taskkill.exe"; Parameters: "/IM traywire.exe /F"; Flags: runhidden; RunOnceId: "StopTraywire"
